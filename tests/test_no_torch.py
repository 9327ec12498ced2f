"""The CPU path (shipped ONNX through onnxruntime) runs without torch installed."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


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


def _cli_without(blocked, args, cwd):
    """Run the vmatte CLI in a fresh interpreter where the `blocked` modules cannot be imported
    (as on the light install); (exit code, stdout, stderr)."""
    code = textwrap.dedent(f"""
        import sys
        for name in {list(blocked)!r}:
            sys.modules[name] = None  # import now raises ImportError; find_spec says absent
        from vmatte.cli import main
        sys.exit(main({list(args)!r}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)
    return out.returncode, out.stdout, out.stderr


def test_bench_runs_the_shipped_onnx_without_torch(tmp_path):
    rc, out, err = _cli_without(["torch", "onnx"], ["bench", "--sizes", "360p", "--frames", "2", "--warmup", "1",
                                                    "--json", str(tmp_path / "b.json")], tmp_path)
    assert rc == 0, err[-2000:]
    assert "rt (shipped weights)" in out and "| onnxruntime | 360p |" in out and (tmp_path / "b.json").is_file()


@pytest.mark.parametrize("args,extra", [(["export"], "torch"), (["export", "--format", "onnx-fp16"], "torch"),
                                        (["export", "--format", "tensorrt"], "torch,trt"),
                                        (["bench", "--model", "paper", "--sizes", "360p"], "torch")])
def test_commands_that_need_an_extra_name_it_in_one_line(tmp_path, args, extra):
    rc, out, err = _cli_without(["torch", "onnx", "tensorrt"], args, tmp_path)
    assert rc == 2 and out == "" and err.count("\n") == 1, err[-2000:]
    assert err.startswith("vmatte: error: ") and f'pip install "vmatte[{extra}]"' in err and "Traceback" not in err
    assert "--backend" not in err  # export has no such option to suggest
    assert list(tmp_path.iterdir()) == []  # no rt_onnx/ folder, no JSON, nothing half-written


def test_export_list_formats_needs_no_torch(tmp_path):
    rc, out, err = _cli_without(["torch", "onnx"], ["export", "--list-formats"], tmp_path)
    assert rc == 0 and "tensorrt" in out, err[-2000:]
