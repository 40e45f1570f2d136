"""Training: the setup (`setup`), one step (`step`: precision, compile, DDP, optimizer, EMA), the loop (`loop`) and exact resume (`run_folder`)."""

from .dist import is_main, rank, world_size
from .errors import TrainError
from .evaluate import accuracy, evaluate
from .export import export_assistant, export_student
from .loop import TrainResult, train_loop
from .run import train
from .setup import Setup, build_student_setup, build_teacher_setup, restore_run, run_folder
from .weights import TEACHER_FILE, TeacherSource, load_pretrained, teacher_source

__all__ = [
    "TEACHER_FILE",
    "Setup",
    "TeacherSource",
    "TrainError",
    "TrainResult",
    "accuracy",
    "build_student_setup",
    "build_teacher_setup",
    "evaluate",
    "export_assistant",
    "export_student",
    "is_main",
    "load_pretrained",
    "rank",
    "restore_run",
    "run_folder",
    "teacher_source",
    "train",
    "train_loop",
    "world_size",
]
