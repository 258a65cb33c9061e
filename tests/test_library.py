"""The README's library script runs as written, in a process of its own."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_script() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Use it as a library", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]


def test_the_readmes_library_script_trains_checkpoints_and_samples(fashion_tfds_dir, tmp_path):
    script = readme_script() + (
        "\nimport numpy as np\n"
        "assert samples.shape == (16, *data.image_shape) and np.isfinite(samples).all()\n"
        "print('samples', samples.shape)\n")
    path = tmp_path / "library.py"
    path.write_text(script)
    result = subprocess.run([sys.executable, str(path)], cwd=str(tmp_path), text=True,
                            capture_output=True, timeout=300,
                            env={**os.environ, "TFDS_DATA_DIR": fashion_tfds_dir})
    assert result.returncode == 0, result.stderr[-3000:]
    nats = float(re.search(r"-ELBO after 300 steps: (\S+) nats", result.stdout)[1])
    assert 200 < nats < 400, result.stdout  # a 2-D VAE on Fashion-MNIST after 300 steps
    assert "samples (16, 28, 28, 1)" in result.stdout
