"""DICOM networking: DICOMweb (QIDO-RS/WADO-RS/STOW-RS) and DIMSE (C-FIND/C-MOVE/C-GET/C-STORE) clients."""
