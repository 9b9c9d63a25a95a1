"""avsprep: labelImg boxes on AVSBench clips -> box table -> report -> HDF5 shards.

The dataset side of the toolkit. Importing it (or ``avsprep.cli``) never imports
torch; only ``avsprep.audio.vggish`` and the build with ``--vggish-weights`` do.
"""

__version__ = "0.1.0"
