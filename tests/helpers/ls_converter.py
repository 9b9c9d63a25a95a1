"""Run Label Studio's own converter (``label_studio_sdk.converter``) on files; a script, so it can run
under another Python that has the package (tests/helpers/label_studio.py picks which).

    python ls_converter.py to-voc CONFIG TASKS OUT
    python ls_converter.py to-yolo CONFIG TASKS OUT
    python ls_converter.py from-yolo YOLO_DIR OUT_JSON    (YOLO_DIR: classes.txt, images/, labels/)
    python ls_converter.py version
"""

import sys


def main(argv):
    cmd = argv[0]
    if cmd == "version":
        from importlib.metadata import version
        print(version("label-studio-sdk"))
        return
    if cmd in ("to-voc", "to-yolo"):
        from label_studio_sdk.converter import Converter
        config, tasks, out = argv[1:4]
        conv = Converter(config, project_dir=None, download_resources=False)
        if cmd == "to-voc":
            conv.convert_to_voc(tasks, out, is_dir=False)
        else:
            conv.convert_to_yolo(tasks, out, is_dir=False)
        return
    if cmd == "from-yolo":
        from label_studio_sdk.converter.imports.yolo import convert_yolo_to_ls
        convert_yolo_to_ls(argv[1], argv[2], image_ext=".png,.jpg")
        return
    raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
