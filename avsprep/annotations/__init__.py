"""Annotation files <-> the box table.

Readers are pure (bytes or text in, records and findings out): the hardened labelImg/Pascal-VOC
reader (``voc``), YOLO (``yolo``), CreateML (``createml``) and recognition of files that are not
what they seem (``sniff``); the one box-convention rule (``convention``); the box table itself
(``table``); labelImg's exact XML writer (``labelimg_xml``); and the two writers of annotation
files, ``propose`` (boxes from masks or predictions) and ``export`` (the table back to files).
"""
