"""The open-data catalogue in DCAT-AP_IT (the Italian profile of DCAT-AP), as JSON-LD.

Each dataset has its publisher and rights holder (the Comune di Cremona, IPA code ``c_d150``),
licence CC BY 4.0, theme and update frequency from the EU vocabularies, and one distribution per
format. Harvesters such as dati.gov.it read this document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.opendata.datasets import Dataset
from api.opendata.formats import LICENSE_URL, MEDIA_TYPES, PUBLISHER
from api.opendata.registry import DATASETS

EU = "http://publications.europa.eu/resource/authority"
IPA_CODE = "c_d150"
CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "dcatapit": "http://dati.gov.it/onto/dcatapit#",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "locn": "http://www.w3.org/ns/locn#",
}
FILE_TYPES = {"csv": "CSV", "json": "JSON", "geojson": "GEOJSON"}


def _agent() -> dict[str, Any]:
    return {
        "@type": ["dcatapit:Agent", "foaf:Agent"],
        "dct:identifier": IPA_CODE,
        "foaf:name": PUBLISHER,
    }


def _date(t: datetime) -> dict[str, str]:
    return {"@value": t.date().isoformat(), "@type": "xsd:date"}


def _licence() -> dict[str, Any]:
    return {
        "@id": LICENSE_URL,
        "@type": ["dcatapit:LicenseDocument", "dct:LicenseDocument"],
        "dct:type": {"@id": "http://purl.org/adms/licencetype/Attribution"},
        "foaf:name": "Creative Commons Attribuzione 4.0 Internazionale (CC BY 4.0)",
    }


def _dataset(d: Dataset, base: str, modified: datetime) -> dict[str, Any]:
    # every @id is an address that answers: a harvester follows them
    url = f"{base}/v1/opendata/{d.id}"  # + .csv, .json, .geojson: the downloads
    return {
        "@id": f"{base}/v1/opendata/datasets/{d.id}",
        "@type": ["dcatapit:Dataset", "dcat:Dataset"],
        "dct:identifier": f"{IPA_CODE}:{d.id}",
        "dct:title": [
            {"@value": d.title_it, "@language": "it"},
            {"@value": d.title_en, "@language": "en"},
        ],
        "dct:description": [
            {"@value": d.description_it, "@language": "it"},
            {"@value": d.description_en, "@language": "en"},
        ],
        "dct:modified": _date(modified),
        "dcat:theme": {"@id": f"{EU}/data-theme/{d.theme}"},
        "dct:accrualPeriodicity": {"@id": f"{EU}/frequency/{d.frequency}"},
        "dct:publisher": _agent(),
        "dct:rightsHolder": _agent(),
        "dct:language": {"@id": f"{EU}/language/ITA"},
        "dct:spatial": {"@type": "dct:Location", "locn:geographicName": "Cremona"},
        "dcat:keyword": list(d.keywords),
        "dcat:distribution": [
            {
                "@id": f"{url}.{fmt}",
                "@type": ["dcatapit:Distribution", "dcat:Distribution"],
                "dct:title": f"{d.title_it} ({FILE_TYPES[fmt]})",
                "dct:format": {"@id": f"{EU}/file-type/{FILE_TYPES[fmt]}"},
                "dcat:mediaType": media.split(";")[0],
                "dcat:accessURL": {"@id": f"{url}.{fmt}"},
                "dcat:downloadURL": {"@id": f"{url}.{fmt}"},
                "dct:license": _licence(),
            }
            for fmt, media in MEDIA_TYPES.items()
        ],
    }


def catalog(base: str, modified: datetime) -> dict[str, Any]:
    """The DCAT-AP_IT catalogue; ``base`` is the API's public URL."""
    return {
        "@context": CONTEXT,
        "@id": f"{base}/v1/opendata/catalog",
        "@type": ["dcatapit:Catalog", "dcat:Catalog"],
        "dct:title": [
            {"@value": "Cremona smart city: dati aperti", "@language": "it"},
            {"@value": "Cremona smart city: open data", "@language": "en"},
        ],
        "dct:description": [
            {
                "@value": "Dati aggregati dei servizi smart della città di Cremona.",
                "@language": "it",
            },
            {"@value": "Aggregated data from Cremona's smart services.", "@language": "en"},
        ],
        "dct:publisher": _agent(),
        "dct:modified": _date(modified),
        "dct:language": {"@id": f"{EU}/language/ITA"},
        "foaf:homepage": {"@id": f"{base}/"},
        "dcat:dataset": [_dataset(d, base, modified) for d in DATASETS.values()],
    }
