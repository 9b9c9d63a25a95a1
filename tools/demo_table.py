"""Print the demo's closing table from DEMO_OUT/results.json (used by tools/demo.sh)."""

import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")
res = json.loads((out / "results.json").read_text())
rows = [("real audio", res["miou"], res["fscore"])]
for name, label in (("shuffle", "shuffled audio"), ("zero", "zeroed audio")):
    if name in res.get("ablations", {}):
        rows.append((label, res["ablations"][name]["miou"], res["ablations"][name]["fscore"]))
print()
print(f"Demo results on {res.get('n_clips', res['clips'])} test clips ({res['frames']} frames), official AVSBench protocol:")
print(f"  {'audio':<16} {'mIoU':>7} {'F-score':>8}")
for label, miou, f in rows:
    print(f"  {label:<16} {miou:7.3f} {f:8.3f}")
if len(rows) > 1:
    print(f"  drop with shuffled audio: {rows[0][1] - rows[1][1]:+.3f} mIoU (the model listens)")
print()
print(f"  run dir:       {out / 'run'}")
print(f"  curves:        {out / 'run' / 'curves.png'}")
print(f"  contact sheet: {out / 'contact_sheet.png'}")
print(f"  results JSON:  {out / 'results.json'}")
