"""The notebooks run top to bottom on the embedded default, and are committed without outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["score_traces.ipynb", "inspect_labels.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, monkeypatch):
    monkeypatch.setenv("PRM_THREADS", "1")  # read by the notebook's first cell
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # timeout guards against a hang only; the notebooks take about a minute each
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    if name == "inspect_labels.ipynb":  # the step view (prm.view_html.show) draws traces inline
        assert any('class="prm-step' in out.get("data", {}).get("text/html", "") for out in outputs)
    # the last cell of each notebook draws a figure
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    assert any("image/png" in out.get("data", {}) for out in last.outputs)
