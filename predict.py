"""Inference on one image with a RAVLT checkpoint (Hydra-composed from conf/predict.yaml, like train.py).

    python predict.py task=classification model=ravlt_t checkpoint=RAVLT_T.pth image=cat.jpg
    python predict.py task=detection checkpoint=outputs/<run>/epoch_12.pth image=street.jpg
    python predict.py task=segmentation checkpoint=outputs/<run>/iter_80000.pth image=room.jpg

Options: conf/predict.yaml. The same command is installed as ``ravlt-predict``.
"""
from ravlt.predict.cli import main

if __name__ == "__main__":
    main()
