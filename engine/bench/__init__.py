"""FoleyBench: metrics for one clip and aggregated over a split (semantic, temporal, spatial,
aesthetic, distribution), mirroring the columns of the PrismAudio paper's tables."""
