"""PySide6 + pyqtgraph widgets: ``MainWindow``, ``SliceView``, ``SliceSlider``, ``SeriesBrowser``, ``InfoPanel``.

Importing this package configures pyqtgraph once for the whole process: images are row-major
(``image[row, col]``, the numpy/DICOM layout), so no array is ever transposed for display.
"""

import pyqtgraph as pg

pg.setConfigOptions(imageAxisOrder="row-major")
