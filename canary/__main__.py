from canary.cli import entrypoint

entrypoint()
