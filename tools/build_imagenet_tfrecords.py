r"""Builds indexed ImageNet TFRecords (with an `index` feature) from an image folder.

  python tools/build_imagenet_tfrecords.py \
      --image_dir=/data/imagenet/val --index_file=imagenet_index.npz --allow_pickle \
      --split=validation --output_dir=/data/imagenet-indexed --num_shards=128

The index list is a text file of `filename index [label]` lines (label 0-based), or the
published `imagenet_index.npz` (its filenames are pickled: pass --allow_pickle only for a
file you trust). Labels missing from the list come from the synset folders. CMYK JPEGs and
PNGs are re-encoded as RGB JPEG. The output is read by
`heldout.datasets.get_source("imagenet", data_dir=<output_dir>)`. Errors in the inputs are
one line naming the file (exit status 2). The command lives in
`heldout.cli.build_imagenet_tfrecords`.
"""

from heldout.cli.build_imagenet_tfrecords import run

if __name__ == "__main__":
    run()
