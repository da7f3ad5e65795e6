"""How a synthetic set is judged: the protocol (:mod:`.protocol`), the targets the networks learn
from (:mod:`.labels`, :mod:`.teacher`) and the training and test of K networks (:mod:`.training`)."""

from dcbench.evaluation.labels import soft_label_loss, soft_target_loss
from dcbench.evaluation.protocol import (
    EVAL_AUGMENTATIONS,
    LABEL_LOSSES,
    LABEL_SOURCES,
    PROTOCOL_VERSION,
    Protocol,
    lr_drop_epoch,
)
from dcbench.evaluation.teacher import Teacher, TeacherRecipe, load_teacher, teacher_recipe
from dcbench.evaluation.training import (
    CPU_STACKING_MAX_BATCH,
    EvaluationResult,
    check_whitening,
    evaluate_synthetic,
)

__all__ = [
    "CPU_STACKING_MAX_BATCH",
    "EVAL_AUGMENTATIONS",
    "LABEL_LOSSES",
    "LABEL_SOURCES",
    "PROTOCOL_VERSION",
    "EvaluationResult",
    "Protocol",
    "Teacher",
    "TeacherRecipe",
    "check_whitening",
    "evaluate_synthetic",
    "load_teacher",
    "lr_drop_epoch",
    "soft_label_loss",
    "soft_target_loss",
    "teacher_recipe",
]
