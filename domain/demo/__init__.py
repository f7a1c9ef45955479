"""Generated, labelled demo data for the bundled sample (the source data has no recipients or dates)."""
