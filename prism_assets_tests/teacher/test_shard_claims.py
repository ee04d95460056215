"""Two runs of one teacher shard: the second stops with a message while the first lives; a killed run's claim
is taken over at once (its process is gone) or after its heartbeat expires (another host)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from pyarrow import fs

from prism_assets.teacher.logits.shards import Claimant, ShardBusy, claim_shard, release_shard


@pytest.fixture
def folder(tmp_path):
    return fs.LocalFileSystem(), str(tmp_path / "_staging" / "teacher_logit_shards" / "003")


def holder(folder: str) -> subprocess.Popen:
    """A real process that claims the shard and keeps running (as a capture would)."""
    code = textwrap.dedent(f"""
        from pyarrow import fs
        from prism_assets.teacher.logits.shards import Claimant, claim_shard
        claim_shard(fs.LocalFileSystem(), {folder!r}, Claimant())
        print("claimed", flush=True)
        import time; time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "claimed"
    return process


def test_a_live_run_keeps_the_shard_and_a_killed_one_gives_it_up(folder):
    filesystem, path = folder
    first = holder(path)
    try:
        with pytest.raises(ShardBusy, match=f"process {first.pid} .* wait for it to finish or cancel it"):
            claim_shard(filesystem, path, Claimant())
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    mine = Claimant()
    claim_shard(filesystem, path, mine)  # the killed run's process is gone: taken over at once
    with filesystem.open_input_stream(f"{path}/CLAIM.json") as stream:
        assert json.loads(stream.read())["token"] == mine.token


def test_another_hosts_claim_holds_until_its_heartbeat_expires(folder):
    filesystem, path = folder
    elsewhere = Claimant(host="gpu-node-7", pid=1, token="abc")
    claim_shard(filesystem, path, elsewhere, now=1_000.0)
    with pytest.raises(ShardBusy, match="gpu-node-7"):
        claim_shard(filesystem, path, Claimant(), now=1_000.0 + 60)
    claim_shard(filesystem, path, Claimant(), now=1_000.0 + 60 * 60)  # stale: taken over


def test_release_drops_only_ones_own_claim(folder):
    filesystem, path = folder
    mine, theirs = Claimant(), Claimant(host="other", pid=1, token="t")
    claim_shard(filesystem, path, theirs, now=time.time())
    release_shard(filesystem, path, mine)
    with pytest.raises(ShardBusy):
        claim_shard(filesystem, path, mine)
    release_shard(filesystem, path, theirs)
    claim_shard(filesystem, path, mine)
    claim_shard(filesystem, path, mine)  # refreshing one's own claim (the heartbeat) never conflicts
