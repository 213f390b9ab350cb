"""Objectives: prediction losses and the anti-collapse devices (EMA teacher, VICReg, Barlow
Twins, SIGReg), one idea per module."""

from jepalab.objectives.barlow import BarlowTwinsLoss
from jepalab.objectives.ema import EMATeacher
from jepalab.objectives.prediction import prediction_loss
from jepalab.objectives.sigreg import SIGReg
from jepalab.objectives.vicreg import VICRegLoss

__all__ = ["BarlowTwinsLoss", "EMATeacher", "SIGReg", "VICRegLoss", "prediction_loss"]
