"""Test session set-up: a registry of the embedded samples plus malformed and clean fixture sources.

PRISM_SOURCES is set before any test module imports prism_assets, because source partitions are
read from the registry when the Dagster definitions load.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from prism_assets.core.settings import EMBEDDED_DATA, EMBEDDED_REGISTRY

SESSION_DIR = Path(tempfile.mkdtemp(prefix="prism-tests-"))
atexit.register(shutil.rmtree, SESSION_DIR, ignore_errors=True)

GOOD_ROWS = [{"id": f"ok-{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}]} for i in range(5)]
EXPECTED_QUARANTINE = {
    "empty prompt": 1, "placeholder prompt": 1, "non-text content": 1, "invalid role order": 1,
    "undecodable text": 1, "invalid JSON": 1, "over context limit": 1, "duplicate id": 1,
}


GSM8K_FIRST = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
               "How many clips did Natalia sell altogether in April and May?")
# Planted duplicates of embedded prompts (other sources), and prompts that must stay distinct.
PLANTED = {
    "case-and-space": "  natalia SOLD clips to 48 of her friends in april,   "
                      "and then she sold half as many clips in May. "
                      " How many clips did Natalia sell altogether in April and May?  ",
    "edited-copy": GSM8K_FIRST + " Show your work.",
    "same-math-problem": None,  # filled with the first MATH problem below: the same problem in two sources
    "distinct-similar-topic": "Omar sold pens to 12 of his cousins in March, and twice as many pens in June. "
                              "How many pens did Omar sell in total?",
    "distinct-other": "Explain why the sky is blue, in two sentences.",
}
PLANTED["same-math-problem"] = json.loads(
    (EMBEDDED_DATA / "math_train_400.jsonl").read_text().splitlines()[0])["problem"]


def _write_fixture_registry(folder: Path) -> Path:
    lines = [json.dumps(row).encode() for row in GOOD_ROWS]
    lines += [
        json.dumps({"id": "empty", "messages": [{"role": "user", "content": "   "}]}).encode(),
        json.dumps({"id": "placeholder", "dataset": "taco", "split": "train", "index": "17",
                    "messages": [{"role": "user", "content": "-"}]}).encode(),
        json.dumps({"id": "image",
                    "messages": [{"role": "user", "content": [{"type": "image", "url": "x"}]}]}).encode(),
        json.dumps({"id": "order",
                    "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}).encode(),
        b'{"id": "bad-bytes", "messages": [{"role": "user", "content": "caf\xe9 \xff"}]}',
        b'{"id": "truncated", "messages": [',
        json.dumps({"id": "huge", "messages": [{"role": "user", "content": "word " * 40_000}]}).encode(),
        json.dumps(GOOD_ROWS[0]).encode(),  # duplicate id "ok-0"
    ]
    (folder / "messy.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (folder / "clean.jsonl").write_text("\n".join(json.dumps(r) for r in GOOD_ROWS[:3]) + "\n")
    (folder / "planted.jsonl").write_text("\n".join(json.dumps({"id": key, "question": text})
                                                    for key, text in PLANTED.items()) + "\n")
    registry = folder / "registry.yaml"
    registry.write_text(f"""
include: [{EMBEDDED_REGISTRY}]
sources:
  - {{name: messy, dataset: test/messy, path: messy.jsonl, adapter: messages, options: {{id_field: id}},
     default_skill_bucket: B4, licence: MIT}}
  - {{name: clean, dataset: test/clean, path: clean.jsonl, adapter: messages, options: {{id_field: id}},
     default_skill_bucket: B2, licence: MIT}}
  - {{name: planted, dataset: test/planted, path: planted.jsonl, adapter: flat,
     options: {{id_field: id, prompt_field: question}}, default_skill_bucket: B2, licence: MIT}}
""")
    return registry


os.environ["PRISM_SOURCES"] = str(_write_fixture_registry(SESSION_DIR))
os.environ["PRISM_CACHE_DIR"] = os.environ.get("PRISM_CACHE_DIR", str(Path.home() / ".cache" / "prism"))
(SESSION_DIR / "dagster_home").mkdir()
(SESSION_DIR / "dagster_home" / "dagster.yaml").write_text("")
os.environ["DAGSTER_HOME"] = str(SESSION_DIR / "dagster_home")


@pytest.fixture()
def lakehouse_root(tmp_path) -> str:
    return str(tmp_path / "lakehouse")


class StagedLakehouse:
    """The test registry (embedded samples + fixtures) materialized stage by stage, on demand: a test asks for the
    last stage it reads, and only the stages up to it run (once per session, in the demo's order)."""

    def __init__(self, root: str):
        from prism_assets.cli.demo import demo_steps
        from prism_assets.core.storage import Lakehouse
        from prism_assets.defs.definitions import build_definitions
        from prism_assets.defs.resources import LakehouseResource, TeacherResource

        self.lakehouse = Lakehouse(root)
        self.definitions = build_definitions()
        self.resources = {"lakehouse": LakehouseResource(root=root), "teacher": TeacherResource()}
        self.steps = demo_steps(self.definitions)
        self.results: dict[str, list] = {}

    def through(self, stage: str):
        from prism_assets.cli.demo import DEMO_RUN_CONFIG, run_step

        # the demo's settings, with a lighter valuation: the teacher's window and the labels are the slow part
        config = {**DEMO_RUN_CONFIG, "prompt_features": {"config": {"context": 16, "window": 4}},
                  "lp_labels": {"config": {"calibration_share": 0.02, "min_per_bucket": 6, "warmup_steps": 8,
                                           "heldout_prompts": 8, "heldout_tokens": 12, "max_new_tokens": 16,
                                           "student_context": 16, "student_window": 4}},
                  # 6 labels per bucket rank by chance: use the heads anyway, the tests check the machinery
                  "prompt_utility": {"config": {"max_p_value": 1.0}},
                  "valuation_proof": {"config": {"seeds": [0], "steps": 2, "eval_every": 1, "heldout_prompts": 4,
                                                 "heldout_tokens": 8, "max_new_tokens": 8}}}
        last = max(i for i, step in enumerate(self.steps) if stage in step.stages)
        for step in self.steps[len(self.results): last + 1]:
            self.results[step.title] = run_step(step, self.definitions, config, resources=self.resources,
                                                raise_on_error=False)
            for result in self.results[step.title]:  # a failed run's errors reach the log of the test that failed
                for event in result.all_events:
                    if event.is_step_failure:
                        print(f"FAILED step {event.step_key}: {event.event_specific_data.error.to_string()}")
        return self.lakehouse


@pytest.fixture(scope="session")
def staged(tmp_path_factory) -> StagedLakehouse:
    return StagedLakehouse(str(tmp_path_factory.mktemp("lakehouse")))


@pytest.fixture(scope="session")
def curated(staged):
    """The prompt pool through redundancy control: pool, quarantine, labels, duplicates, clusters, caps."""
    return staged.through("redundancy")


@pytest.fixture(scope="session")
def sampled(staged):
    """... plus the validation suites and the round-0 manifests of every phase."""
    return staged.through("sampling")


@pytest.fixture(scope="session")
def materialized(staged):
    """Every stage, teacher logits included, and the results of every run."""
    return staged.through("teacher_logits"), staged.results


@pytest.fixture(scope="session")
def teacher():
    """The default offline teacher, loaded once per process (the same object the Dagster resource hands out)."""
    from prism_assets.defs.resources import TeacherResource

    return TeacherResource().get()
