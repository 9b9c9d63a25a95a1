"""The embedded demo releases: a synthetic AVSBench S4/MS3 release (``avsbench``) and a
synthetic AVSBench-semantic release (``avss``), written in the real layouts."""
