"""Download a released tarball (or any .tar.gz) with MD5 check and resume; optionally extract it.

Examples:
  # Every aux_arrays.npz of CIFAR-10, a few GB of disk, one pass over the 239 GB tarball:
  python tools/download.py --artifact=cifar10-inception --output_dir=data \\
      --extract --only='*/aux_arrays.npz'
  # The whole tarball, kept as a file (run the same command again to resume):
  python tools/download.py --output_dir=data \\
      --url=gs://gresearch/heldout-training-checkpoints/imagenet-resnet50.tar.gz
  # Check a file you already have:
  python tools/download.py --artifact=cifar10-inception --verify=data/cifar10-inception.tar.gz

Free disk space is checked before anything is written; a second download of the same archive
into the same folder is refused while the first runs (the message names its PID).

Exit status: 0 when everything was verified and written; 1 on any failure (MD5 mismatch,
network, busy lock, too little disk space, refused or conflicting members, nothing matched
--only); 2 on usage errors; 130 when interrupted.
"""

from heldout.cli.download import run

if __name__ == "__main__":
    run()
