"""The CPU path (shipped ONNX through onnxruntime) runs without torch installed."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_matter_and_process_without_torch(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        import numpy as np
        from vmatte import Matter, list_models
        assert "rt" in list_models()
        m = Matter("rt", backend="auto")
        assert m.backend_name == "onnxruntime", m.backend_name
        a = m.matte(np.full((90, 160, 3), 128, np.uint8))
        assert a.shape == (90, 160)
        from vmatte.process import process
        import cv2
        cv2.imwrite(r"{tmp_path / 'in.png'}", np.full((72, 96, 3), 90, np.uint8))
        r = process(r"{tmp_path / 'in.png'}", r"{tmp_path / 'out.png'}", matter=m, background="green")
        assert r.frames == 1
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
