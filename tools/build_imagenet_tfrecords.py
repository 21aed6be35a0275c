"""Indexed ImageNet TFRecords from an image folder (`heldout build-imagenet-tfrecords`)."""

from heldout.cli.main import run_command

if __name__ == "__main__":  # not on import (Dask workers spawn with this as __main__)
    run_command("build-imagenet-tfrecords")
