"""notebooks/explore_processed.ipynb runs top to bottom on the processed file of the CLI's settings.

`make notebook` executes it in Jupyter (nbconvert) on fresh demo data; here its code cells run in order
as one script in a plain Python process, so the default suite needs no Jupyter."""

from __future__ import annotations

import json
import subprocess
import sys

from taxifare.preprocessing.run import preprocess
from taxifare.preprocessing.sink import read_manifest
from taxifare.sources.demo import write_demo_rides
from tests.conftest import REPO, cli_env
from tests.training_data import demo_settings

NOTEBOOK = REPO / "notebooks" / "explore_processed.ipynb"
FIGURES = """
import matplotlib.pyplot as plt
print([axes.get_title() for number in plt.get_fignums() for axes in plt.figure(number).axes if axes.get_title()])
print(sorted(by_hour.dropna().index) == list(range(24)), len(sample))
"""


def notebook_script() -> str:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


def test_the_notebook_explores_the_processed_file_of_the_settings_in_dotenv_and_draws_the_fare_by_hour(tmp_path):
    settings = demo_settings(tmp_path / "mine")
    write_demo_rides(settings.raw_cache_path, rows=3000, seed=5)
    preprocess(settings)
    # A later file by name, of another data set in the same folder: not the one the settings name.
    decoy = settings.processed_path.with_name(settings.processed_path.name.replace("_demo", "_zzz"))
    decoy.write_text("not a processed file\n")
    (tmp_path / ".env").write_text(f"LOCAL_DATA_PATH={settings.local_data_path}\nDATA_SIZE=demo\n")
    (tmp_path / "notebooks").mkdir()
    env = cli_env(tmp_path, MPLBACKEND="Agg")
    del env["LOCAL_DATA_PATH"]  # from ../.env, as for a notebook opened in notebooks/ of the project

    done = subprocess.run(
        [sys.executable, "-c", notebook_script() + FIGURES], cwd=tmp_path / "notebooks", env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == str(settings.processed_path)
    assert lines[-2] == "['fare against straight-line distance', 'fare by pickup hour (New York time)']"
    assert lines[-1] == f"True {read_manifest(settings.processed_path)['rows_kept']}"  # every hour; all rows, being few
