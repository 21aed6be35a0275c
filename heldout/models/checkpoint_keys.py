"""The keys of a release-format checkpoint: what a model would save, and what they say.

`tf.train.Checkpoint(model=<model>, epoch=<int64 var>, global_step=<int64 var>)` names
variables `model/stage1/_body/0/conv1x1/conv/w/.ATTRIBUTES/VARIABLE_VALUE` and
`epoch/.ATTRIBUTES/VARIABLE_VALUE`; the classifier's keys tell the architecture.
"""

from __future__ import annotations

import collections

import tensorflow as tf

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
EPOCH_KEY = "epoch" + VALUE_SUFFIX
GLOBAL_STEP_KEY = "global_step" + VALUE_SUFFIX

# Key prefixes that identify the architecture of a checkpoint, and its classifier bias.
ARCH_SIGNATURES = {
    "small_inception": ("model/stage1/_body/", "model/_pred/b" + VALUE_SUFFIX),
    "resnet50": ("model/_block_groups/", "model/_logits/b" + VALUE_SUFFIX),
    "mlp": ("model/hidden1/", "model/logits/b" + VALUE_SUFFIX),
}


def _escape(local_name: str) -> str:
    # Same escaping as TensorFlow's object-graph checkpoint keys.
    return local_name.replace(".", "..").replace("/", ".S")


def model_checkpoint_keys(model: tf.Module, prefix: str = "model") -> dict[str, tf.Variable]:
    """Checkpoint key -> variable, as `tf.train.Checkpoint(model=model)` would name them.

    Walks the object graph breadth-first (TensorFlow names each object by its first, i.e.
    shortest, path) with the public `tf.train.TrackableView`.
    """
    view = tf.train.TrackableView(model)
    keys: dict[str, tf.Variable] = {}
    seen = {id(model)}
    queue = collections.deque([(model, prefix)])
    while queue:
        obj, path = queue.popleft()
        for name, child in view.children(obj).items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = f"{path}/{_escape(name)}"
            if isinstance(child, tf.Variable):
                keys[child_path + VALUE_SUFFIX] = child
            else:
                queue.append((child, child_path))
    return keys


def checkpoint_arch(names) -> str | None:
    """The architecture a set of checkpoint keys looks like, or None."""
    names = list(names)
    for arch, (marker, _) in ARCH_SIGNATURES.items():
        if any(n.startswith(marker) for n in names):
            return arch
    return None


def checkpoint_num_classes(shapes: dict[str, list[int]]) -> int | None:
    """Class count of a checkpoint, from its classifier bias, or None."""
    for _, (_, bias_key) in ARCH_SIGNATURES.items():
        if bias_key in shapes and len(shapes[bias_key]) == 1:
            return int(shapes[bias_key][0])
    return None
