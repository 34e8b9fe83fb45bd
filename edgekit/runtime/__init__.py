"""Running a bundle: the bundle on disk, its manifest, and BundleModel. Never imports torch."""
