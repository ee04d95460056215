"""The default student: a layer-pruned copy of the teacher, built offline from its cached weights.

Why pruning: a student that shares the teacher's embeddings, head and tokenizer needs no vocabulary
mapping (teacher ids index student logits directly) and starts close to the teacher, so distillation
runs show a useful signal within a few CPU steps. Layers are kept evenly spaced, first and last
included (the embedding-facing and head-facing layers matter most). The pruned model is saved once
under CACHE_DIR/students, beside the teacher cache, so later loads take seconds and need no hub.
Any other causal LM (a folder or a hub id) is accepted as student if it uses the teacher's tokenizer.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
from collections.abc import Sequence

import numpy as np
import torch

from prism_assets.core.settings import CACHE_DIR
from prism_assets.teacher.backends.base import default_teacher_dir

DEFAULT_LAYERS = 5
_LAYER = re.compile(r"\.layers\.(\d+)\.")


def keep_layers(total: int, keep: int) -> list[int]:
    """`keep` of `total` layer indices, evenly spaced, first and last included."""
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers")
    return np.linspace(0, total - 1, keep).round().astype(int).tolist()


def prune(model, indices: Sequence[int]):
    """A copy of a decoder-only causal LM keeping only decoder layers `indices` (in that order); every
    other weight (embeddings, final norm, head) is copied unchanged."""
    config = copy.deepcopy(model.config)
    total = config.num_hidden_layers
    if not indices or min(indices) < 0 or max(indices) >= total:
        raise ValueError(f"layer indices {list(indices)} do not lie in [0, {total})")
    for key, value in list(vars(config).items()):  # per-layer settings (e.g. layer_types) follow their layers
        if isinstance(value, list | tuple) and len(value) == total:
            setattr(config, key, [value[i] for i in indices])
    config.num_hidden_layers = len(indices)
    new_index = {old: new for new, old in enumerate(indices)}
    state = {}
    for key, value in model.state_dict().items():
        match = _LAYER.search(key)
        if match is None:
            state[key] = value
        elif int(match[1]) in new_index:
            state[f"{key[:match.start()]}.layers.{new_index[int(match[1])]}.{key[match.end():]}"] = value
    if len(state) == len(model.state_dict()):
        raise ValueError(f"{type(model).__name__} keeps its decoder blocks outside `*.layers.N.*`: cannot prune it")
    student = type(model)(config)
    student.load_state_dict(state, strict=True)
    student.generation_config = copy.deepcopy(model.generation_config)
    return student


def student_dir(layers: int | Sequence[int] = DEFAULT_LAYERS, teacher: str | None = None) -> str:
    """Folder of `teacher` (a model folder or hub id; default: the default teacher) pruned to `layers`
    (a count, evenly spaced, or explicit indices), built on first use and cached."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per load would flood run logs
    source = teacher or default_teacher_dir()
    total = AutoConfig.from_pretrained(source).num_hidden_layers
    indices = keep_layers(total, layers) if isinstance(layers, int) else list(layers)
    name = os.path.basename(os.path.normpath(source)) if os.path.isdir(source) else source.replace("/", "--")
    digest = hashlib.sha1(os.path.abspath(source).encode() if os.path.isdir(source) else source.encode()).hexdigest()
    cached = CACHE_DIR / "students" / f"{name}-{digest[:8]}-layers-{'-'.join(map(str, indices))}"
    if (cached / "config.json").exists():
        return str(cached)
    student = prune(AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32), indices)
    partial = cached.with_name(cached.name + f".tmp{os.getpid()}")
    student.save_pretrained(str(partial))
    AutoTokenizer.from_pretrained(source).save_pretrained(str(partial))
    try:
        os.replace(partial, cached)
    except OSError:  # another process built it first
        shutil.rmtree(partial, ignore_errors=True)
    return str(cached)


def load_student(model: str | None = None, layers: int | Sequence[int] = DEFAULT_LAYERS, teacher: str | None = None,
                 dtype: str = "float32", device: str | None = None):
    """(model, tokenizer) of the student: `model` (any causal LM folder or hub id) or, by default, the
    teacher pruned to `layers`. Its tokenizer must be the teacher's: stored teacher ids index its logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = model or student_dir(layers, teacher)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    reference = AutoTokenizer.from_pretrained(teacher or default_teacher_dir())
    if tokenizer.get_vocab() != reference.get_vocab():
        raise ValueError(f"student {folder!r} does not share the teacher's tokenizer ({len(tokenizer):,} vs "
                         f"{len(reference):,} tokens): distillation targets are teacher token ids")
    student = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    if student.get_output_embeddings().weight.shape[0] < len(reference):
        raise ValueError(f"student {folder!r} has fewer output logits than the teacher's {len(reference):,} tokens")
    return student.to(device or ("cuda" if torch.cuda.is_available() else "cpu")), tokenizer
