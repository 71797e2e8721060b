"""Every word of a remote command is quoted: whatever the text, bash and dash (the login
shells sshd hands commands to) pass it through byte-identical and run nothing else."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.backends.sshconn import quote_command

WORDS = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                         max_size=40), min_size=1, max_size=5)
NASTY = ["$(touch CANARY)", "`touch CANARY`", "; touch CANARY", "| touch CANARY", "a\nb", "'", '"', "--help",
         "-oProxyCommand=touch CANARY", "\\", "$HOME", "*", "~", "!x", "ünï ✓", ""]


@pytest.mark.parametrize("shell", ["bash", "dash"])
@settings(max_examples=60, deadline=None)
@given(words=st.one_of(WORDS, st.lists(st.sampled_from(NASTY), min_size=1, max_size=4)))
def test_words_arrive_byte_identical(shell: str, words: list[str], tmp_path_factory: pytest.TempPathFactory) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} not installed")
    cwd = tmp_path_factory.mktemp("q")
    cmd = quote_command(["printf", "%s\\0", *words])
    out = subprocess.run([exe, "-c", cmd], cwd=cwd, capture_output=True, timeout=10).stdout
    assert out == b"".join(w.encode("utf-8") + b"\0" for w in words)
    assert not list(Path(cwd).iterdir())  # no canary, nothing run
