"""The toolkit's class order and the mapping from other datasets' label orders."""
import numpy as np
import pytest

from sse.classes import CLASS_NAMES, class_index, label_mapping, reorder_columns


def test_class_order_is_afew_alphabetical():
    assert CLASS_NAMES == ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")


def test_aliases_are_accepted_and_unknown_names_rejected():
    assert class_index("anger") == class_index("ANGRY") == 0
    assert class_index("happiness") == 3 and class_index("surprised") == 6
    with pytest.raises(ValueError, match="unknown emotion class 'contempt'"):
        class_index("contempt")


def test_fer2013_labels_map_to_toolkit_labels():
    # FER2013: 0 Angry 1 Disgust 2 Fear 3 Happy 4 Sad 5 Surprise 6 Neutral
    assert label_mapping("fer2013").tolist() == [0, 1, 2, 3, 5, 6, 4]


def test_reorder_columns_moves_fer2013_scores_into_toolkit_columns():
    fer = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])  # value = FER id / 10
    out = reorder_columns(fer, "fer2013")
    assert out[0, CLASS_NAMES.index("Sad")] == 0.4 and out[0, CLASS_NAMES.index("Neutral")] == 0.6


def test_custom_order_must_be_a_permutation():
    with pytest.raises(ValueError, match="not a permutation"):
        label_mapping(["Angry", "Angry", "Fear", "Happy", "Sad", "Surprise", "Neutral"])
