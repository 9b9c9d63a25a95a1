"""Annotation file formats other than the hardened VOC reader: labelImg's XML writer, YOLO, CreateML,
and recognition of files that are not what they seem (LabelMe, CVAT, dlib, mis-declared encodings).

One module per job; every reader is pure (bytes/text in, records and findings out).
"""
