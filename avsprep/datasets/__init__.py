"""What a release looks like on disk: the only package that knows AVSBench S4/MS3 from
AVSBench-semantic (AVSS)."""
