"""The customer-segmentation notebook, executed by a real Jupyter kernel (nbclient + ipykernel).

The kernel starts in the repository's root (the README says to open the notebook from there) and runs every
cell in order at a small size (``DEMO_CUSTOMERS``); a cell that raises fails the test with its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dask_kmeans import KMeans

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "customer_segmentation.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert cells and all(not c.outputs and c.execution_count is None for c in cells)


@pytest.fixture(autouse=True)
def this_python_kernel(tmp_path_factory, monkeypatch):
    """The kernel runs this interpreter (with dask_kmeans installed), whatever other "python3" kernel specs
    the machine has: JUPYTER_PATH comes first in Jupyter's search path."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(root))


def _execute(notebook, cwd: Path) -> None:
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError, with the cell's traceback, if any cell fails


def test_notebook_runs_in_a_kernel_from_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_CUSTOMERS", "30000")
    monkeypatch.setenv("DEMO_OUT", str(tmp_path / "out"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    _execute(notebook, ROOT)

    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    texts = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    assert "30,000 customers x 6 categories" in texts and "k=5:" in texts, texts
    # The four plot cells show a PNG inline.
    images = [c for c in code if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert len(images) == 4, [c.source for c in images]
    assert (tmp_path / "out" / "segments.parquet").exists()
    assert KMeans.load(tmp_path / "out" / "model.json").n_clusters == 5


def test_notebook_finds_its_generator_from_its_own_directory():
    """JupyterLab starts the kernel in the notebook's directory: the setup cell works there too."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    setup = next(c for c in notebook.cells if c.cell_type == "code")
    probe = nbformat.v4.new_code_cell("print(demo.__file__)\nprint(sys.executable)")
    notebook.cells = [setup, probe]
    _execute(notebook, NOTEBOOK.parent)
    found, interpreter = probe.outputs[0]["text"].split()
    assert found == str(NOTEBOOK.parent / "customer_segmentation.py")
    assert Path(interpreter) == Path(sys.executable)
