"""What an annotator adds to an extracted release before import/build: one labelImg file per
frame (no box) and the GT masks."""

from __future__ import annotations

from PIL import Image


def annotate_without_boxes(layout, mask: Image.Image) -> None:
    """For every clip of ``layout``: an empty labelImg XML beside each frame (224 x 224, no box:
    no boxes are needed) and ``mask`` saved at each of the clip's GT-mask places."""
    for clip in layout.clips():
        for k in layout.frame_indices(clip):
            frame = layout.frame_path(clip, k)
            frame.with_suffix(".xml").write_text(
                f"<annotation><filename>{frame.name}</filename><size><width>224</width>"
                "<height>224</height><depth>3</depth></size></annotation>")
        for k in layout.mask_frames(clip):
            path = layout.mask_path(clip, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            mask.save(path)
