"""The registry moves heads without the encoder stack: importing it must not load transformers."""

from __future__ import annotations

import subprocess
import sys


def test_artifacts_do_not_import_transformers():
    code = ("import sys, hydralm.artifacts, hydralm.model; "
            "print(sorted(m for m in ('transformers', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
