"""unirepclip.analysis.first_look: notebook 01's first look at zero-shot predictions."""
import numpy as np
import pytest

from unirepclip.analysis.first_look import first_look
from unirepclip.data.sets import ZeroShotTask


class _Clf:
    def __init__(self, ensemble):
        self.ensemble = np.asarray(ensemble, dtype=np.float32)


def _tasks(colour_labels):
    return {"shape": ZeroShotTask("shape", ["circle", "square"], ["a {}"], np.array([0, 1, 0, 1])),
            "colour": ZeroShotTask("colour", ["red", "blue"], ["a {} thing"], colour_labels)}


# images are unit vectors along axis 0 (circle, red), 1 (square, blue); the classifiers are the
# identity, so each image's prediction is its own axis
EMB = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
CLF = {"shape": _Clf(np.eye(2)), "colour": _Clf(np.eye(2))}


def test_first_look_counts_the_images_where_every_task_is_right():
    # dataset rows 0..3; image 3 (row 3) is a square predicted circle; image 2's colour is wrong
    out = first_look(_tasks(np.array([0, 1, 1, 0])), CLF, EMB, [0, 1, 2, 3])
    assert out["correct"] == [True, True, False, False]
    assert out["results"] == {"first_look.all_tasks_right": 0.5}
    assert "true: circle, blue" in out["captions"][2]
    # the rows pick the labels: the same images read as rows 2, 1, 0, 3
    out = first_look(_tasks(np.array([0, 1, 1, 0])), CLF, EMB, [2, 1, 0, 3])
    assert out["correct"] == [False, True, True, False]


def test_first_look_without_labels_records_nothing():
    tasks = {"imagenet": ZeroShotTask("imagenet", ["cat", "dog"], ["a {}"], None)}
    out = first_look(tasks, {"imagenet": _Clf(np.eye(2))}, EMB, [0, 1, 2, 3])
    assert out["correct"] == [None] * 4 and out["results"] == {}
    assert out["captions"][0].startswith("cat ")
    with pytest.raises(KeyError, match="imagenet"):
        first_look(tasks, {}, EMB, [0, 1, 2, 3])
