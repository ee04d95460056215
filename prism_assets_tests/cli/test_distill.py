"""`prism distill` on the materialized test lakehouse: a pruned student learns from both teacher signals, and the
curve lands in the `distill_runs` Delta table."""

import json
import shutil

import pytest

from prism_assets.core import duck
from prism_assets.core.storage import Lakehouse
from prism_assets_tests.cli.test_cli import prism


@pytest.fixture(scope="module")
def private_lakehouse(materialized, tmp_path_factory) -> Lakehouse:
    """A copy, so the runs' table stays out of the shared lakehouse."""
    lakehouse, _ = materialized
    root = tmp_path_factory.mktemp("distill") / "lakehouse"
    shutil.copytree(lakehouse.root, root)
    return Lakehouse(str(root))


@pytest.mark.parametrize(("signal", "loss"), [("shards", "sparse"), ("online", "dense")])
def test_distill_lowers_heldout_kl_and_records_the_curve(private_lakehouse, signal, loss):
    out = prism("distill", "--signal", signal, "--loss", loss, "--steps", "6", "--eval-every", "3", "--seed", "1",
                "--heldout-prompts", "6", "--heldout-tokens", "12", root=private_lakehouse.root, timeout=900)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"signal", "loss", "steps", "tokens", "heldout_kl_start", "heldout_kl_end", "bytes_per_token"} <= set(result)
    assert result["signal"] == signal and result["loss"] == loss and result["steps"] == 6 and result["tokens"] > 0
    assert result["heldout_kl_end"] < result["heldout_kl_start"]
    assert (result["bytes_per_token"] > 0) if signal == "shards" else result["bytes_per_token"] is None
    with duck.connect(private_lakehouse) as con:
        steps = con.execute("SELECT step, heldout_kl FROM distill_runs WHERE run_id = ? ORDER BY step",
                            [result["run_id"]]).fetchall()
    assert [s for s, _ in steps] == [0, 3, 6] and steps[-1][1] == pytest.approx(result["heldout_kl_end"], rel=1e-5)


def test_losses_that_need_the_full_distribution_explain_the_online_signal(private_lakehouse):
    out = prism("distill", "--signal", "shards", "--loss", "dense", root=private_lakehouse.root)
    assert out.returncode == 2 and "--signal online" in out.stderr
