"""Feature: our tasks go through a real Label Studio server and come back (issue 20).

Starts ``label-studio`` on 127.0.0.1 (a fresh SQLite database: minutes), creates a project with our
labeling config through its API, imports our tasks, lets an "annotator" submit two of them (one
box moved) and skip one, exports the project as JSON and JSON_MIN through the API, and imports
those with ``avsprep import``. Skips, saying why, when the ``label-studio`` package is not installed
(it is heavy and pins its own numpy: install it in another environment and point
``AVS_LABEL_STUDIO_PYTHON`` or ``AVS_LABEL_STUDIO_BIN`` at it).
"""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from avsprep.annotations.table import read_table, write_table
from avsprep.cli import cli
from tests.helpers.ls_server import Server, label_studio_bin

pytestmark = pytest.mark.slow


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def server(demo_root, tmp_path_factory):
    binary = label_studio_bin()
    if binary is None:
        pytest.skip("the label-studio package is not installed (pip install label-studio, in its own venv; "
                    "set AVS_LABEL_STUDIO_BIN or AVS_LABEL_STUDIO_PYTHON)")
    srv = Server(binary, tmp_path_factory.mktemp("lsdata"), demo_root)
    yield srv
    srv.stop()


def test_tasks_through_a_real_label_studio(server, demo_root, tmp_path):
    table = tmp_path / "boxes.csv"
    assert invoke("import", "--root", demo_root, "-o", table).exit_code == 0
    df = read_table(table)
    frames = df.drop_duplicates(["video", "frame"]).head(4)[["video", "frame"]]
    small = df.merge(frames, on=["video", "frame"])
    small.loc[small.index[-1:], "verified"] = True  # a frame a person already checked: an annotation
    write_table(small, tmp_path / "small.csv")
    assert invoke("export", tmp_path / "small.csv", tmp_path / "ls", "--to", "label-studio",
                  "--root", demo_root).exit_code == 0
    config = (tmp_path / "ls" / "labeling_config.xml").read_text()
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())

    project = server.api("POST", "/api/projects", {"title": "avsprep", "label_config": config})
    got = server.api("POST", f"/api/projects/{project['id']}/import", tasks)
    assert got["task_count"] == 4 and got["prediction_count"] == 3 and got["annotation_count"] == 1
    server.api("POST", "/api/storages/localfiles", {"project": project["id"], "title": "frames",
                                                    "path": str(demo_root / "s4_data" / "visual_frames")})
    listed = server.api("GET", f"/api/tasks?project={project['id']}")
    listed = listed["tasks"] if isinstance(listed, dict) else listed
    by_frame = {(t["data"]["avs_video"], t["data"]["avs_frame"]): t["id"] for t in listed}
    order = [(v, int(k)) for v, k in frames.itertuples(index=False)]

    # the annotator: accepts frame 0's prediction, moves frame 1's box 10 % right, skips frame 2
    t0 = server.api("GET", f"/api/tasks/{by_frame[order[0]]}")
    server.api("POST", f"/api/tasks/{t0['id']}/annotations", {"result": t0["predictions"][0]["result"]})
    t1 = server.api("GET", f"/api/tasks/{by_frame[order[1]]}")
    moved = copy.deepcopy(t1["predictions"][0]["result"])
    moved[0]["value"]["x"] += 10
    server.api("POST", f"/api/tasks/{t1['id']}/annotations", {"result": moved})
    server.api("POST", f"/api/tasks/{by_frame[order[2]]}/annotations", {"result": [], "was_cancelled": True})

    for kind in ("JSON", "JSON_MIN"):
        out = tmp_path / kind
        out.mkdir()
        doc = server.api("GET", f"/api/projects/{project['id']}/export?exportType={kind}")
        (out / "export.json").write_text(json.dumps(doc))
        r = invoke("import", "--root", demo_root, "-a", out, "-o", tmp_path / f"{kind}.csv", "--json")
        assert r.exit_code == 0, r.output
        back = read_table(tmp_path / f"{kind}.csv")
        keys = sorted(zip(back["video"], back["frame"].astype(int)))
        # the skipped frame and nothing else is missing (a JSON_MIN export leaves cancelled tasks out)
        assert keys == sorted([order[0], order[1], order[3]]), keys
        assert back["verified"].all()
        for key, dx in ((order[0], 0.0), (order[1], 0.1 * 224), (order[3], 0.0)):
            mine = small[(small["video"] == key[0]) & (small["frame"] == key[1])].iloc[0]
            theirs = back[(back["video"] == key[0]) & (back["frame"] == key[1])].iloc[0]
            assert abs(theirs["xmin"] - (mine["xmin"] + dx)) < 0.5 and abs(theirs["ymax"] - mine["ymax"]) < 0.5
            assert theirs["label"] == mine["label"]

    shot = tmp_path / "task.png"
    if server.screenshot(f"/projects/{project['id']}/data?tab=1&task={by_frame[order[1]]}", shot, wait_s=30):
        assert shot.stat().st_size > 20_000  # the labeling view, not a blank page
