"""FER2013 for the toolkit: the official splits as LMDBs of Datum, and the recipe that trains the
shipped models (``models/fer2013_*``) with ``caffe train``.

The data is the ``.npz`` form of FER2013 described in ``../shared/data/PROVENANCE.md`` (JPEG bytes,
offsets, labels in FER2013's own order). Labels are mapped to the toolkit's class order
(``sse.classes``). Training faces are stored padded by ``PAD`` pixels (edges reflected), so that
the net's ``crop_size: 48`` takes random 48x48 crops in TRAIN (shifts of up to ``PAD`` pixels);
PublicTest and PrivateTest are stored at 48x48, where the centred crop is the face itself.

    python -m sse.fer2013 --data ../shared/data/fer2013 --work work/fer2013 prepare
    python -m sse.fer2013 --work work/fer2013 nets holonet48_3conv-s_concat
    caffe train --solver=work/fer2013/holonet48_3conv-s_concat/SSE-HoloNet/SSE_holonet_train_solver.prototxt
    python -m sse.fer2013 --work work/fer2013 select holonet48_3conv-s_concat
    python -m sse.fer2013 --work work/fer2013 ship holonet48_3conv-s_concat --log train.log
    python -m sse.fer2013 --work work/fer2013 ensemble holonet48_3conv-s_concat ...

(``models/train_fer2013.sh`` runs the first three for each stage of the model's schedule,
``python -m sse.fer2013 stages MODEL``: ``next MODEL`` writes the solver of the stage to train and
names the newest snapshot to resume from; ``ship`` and ``ensemble`` are in ``sse/fer2013/ship.py``.)
PublicTest is the validation split (model selection, fusion weights); PrivateTest is the final
test set: it is scored once per shipped model and never used to choose anything.
"""
from .data import PAD, SIZE, SPLITS, Fer2013Error, load_prepared, load_split, pad_faces, prepare, write_lmdb
from .recipe import MEMBERS, Member, get_member, make_nets

__all__ = ["PAD", "SIZE", "SPLITS", "Fer2013Error", "load_prepared", "load_split", "pad_faces", "prepare", "write_lmdb",
           "MEMBERS", "Member", "get_member", "make_nets"]
