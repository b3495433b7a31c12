"""util/cpu_memory.py: freed large tensors stay mapped for reuse; DINO_MALLOC=system leaves malloc alone.

Each case runs in a subprocess: the setting is process-wide and must not change how the rest of
the suite allocates.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from test_train_pipeline import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc (Linux) only")

# allocates and frees a 256 MiB tensor; prints the resident MiB it left behind and the setting's result
PROBE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    import torch
    from util import cpu_memory

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    took = cpu_memory.reuse_freed_memory({enable})
    before = rss_mib()
    x = torch.ones(64, 1024, 1024)  # 256 MiB, every page touched
    del x
    print(took, round(rss_mib() - before), cpu_memory.is_reusing(), cpu_memory.describe(), sep="|")
""")


def probe(enable: bool, hand_back: bool = False, **env):
    """(setting taken, MiB left resident after the free, reusing, describe()) of a fresh process."""
    code = PROBE.format(repo=str(REPO), enable=enable)
    if hand_back:
        code = code.replace("del x\n", "del x\ncpu_memory.hand_back()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env}, check=True).stdout.strip().splitlines()[-1]
    took, kept_mib, reusing, line = out.split("|")
    return took == "True", int(kept_mib), reusing == "True", line


def test_freed_memory_is_kept_for_reuse_only_when_asked():
    took, kept, reusing, line = probe(True)
    assert took and reusing and "kept for reuse" in line
    assert kept > 200  # the freed 256 MiB stayed mapped, ready for the next tensor
    took, kept, reusing, line = probe(False)
    assert took and not reusing and line == "malloc's own behaviour"
    assert kept < 50  # glibc unmapped it on free


def test_dino_malloc_system_turns_it_off():
    took, kept, reusing, line = probe(True, DINO_MALLOC="system")
    assert not took and not reusing and "DINO_MALLOC=system" in line
    assert kept < 50


def test_reuse_then_hand_back_returns_the_memory():
    took, kept, reusing, _ = probe(True, hand_back=True)
    assert took and reusing
    assert kept < 50
