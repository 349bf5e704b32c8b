"""What the PACS browser shows and asks, without Qt: query from the search form, table rows, server summaries.

The browser itself (``viewer.qt.pacs_dialog``) only wires widgets to these and to ``engine.pacs`` jobs.
"""

from __future__ import annotations

from engine.pacs import PacsServer, SeriesResult, StudyQuery, StudyResult
from engine.pacs.errors import PacsConfigError

# "" = any modality; CT first: this is a chest-CT viewer
MODALITIES = ("", "CT", "MR", "CR", "DX", "PT", "NM", "US", "XA", "SC", "OT")
STUDY_COLUMNS = ("Patient", "Patient ID", "Date", "Description", "Modalities", "Series", "Images", "Accession")
SERIES_COLUMNS = ("#", "Modality", "Description", "Images", "Body part")


def person_name(value: str) -> str:
    """DICOM PN ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`` -> ``FAMILY, GIVEN MIDDLE`` (readable, sortable)."""
    parts = [p.strip() for p in str(value or "").split("=")[0].split("^")]
    while parts and not parts[-1]:
        parts.pop()
    if not parts:
        return ""
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if given else family


def display_date(value: str) -> str:
    """``20200315`` -> ``2020-03-15`` (anything else is shown as it came)."""
    text = str(value or "").strip()
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def study_row(study: StudyResult) -> tuple[str, ...]:
    return (person_name(study.patient_name), study.patient_id, display_date(study.study_date),
            study.study_description, "/".join(study.modalities), _count(study.n_series), _count(study.n_instances),
            study.accession_number)


def series_row(series: SeriesResult) -> tuple[str, ...]:
    return (_count(series.series_number), series.modality, series.series_description, _count(series.n_instances),
            series.body_part)


def build_query(*, patient_name: str = "", patient_id: str = "", date_from: str = "", date_to: str = "",
                modality: str = "", accession_number: str = "", limit: int = 200) -> StudyQuery:
    """The :class:`StudyQuery` of the search form; :class:`PacsConfigError` saying which field is wrong."""
    modality = modality.strip().upper()
    if modality and (not modality.isalnum() or len(modality) > 16):
        raise PacsConfigError(f"modality {modality!r} is not a DICOM modality code (e.g. CT, MR, CR)")
    query = StudyQuery(patient_name=patient_name.strip(), patient_id=patient_id.strip(),
                       study_date_from=date_from.strip() or None, study_date_to=date_to.strip() or None,
                       modality=modality, accession_number=accession_number.strip(), limit=limit)
    query.date_range()            # validates both dates and their order now, not on the server
    return query


def server_summary(server: PacsServer) -> str:
    """One line naming how LungLens talks to ``server``."""
    if server.protocol == "dicomweb":
        how = f"DICOMweb {server.url}"
    else:
        method = "C-MOVE" if server.retrieve == "move" else "C-GET"
        how = f"DIMSE {server.host}:{server.port}, AE {server.called_ae} (we are {server.calling_ae}), {method}"
    return how + (" · TLS" if server.uses_tls else "")
