"""The application layer: the `imcsim` command, its workflows, output folders and plots."""
