"""Indexed ImageNet TFRecords from an image folder (`heldout build-imagenet-tfrecords`)."""

from heldout.cli.main import run_command

run_command("build-imagenet-tfrecords")
