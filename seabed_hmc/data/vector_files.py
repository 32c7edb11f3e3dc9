"""Vector files a GIS opens: GeoJSON feature collections and GeoPackage point layers, each written
atomically with a table's columns as the features' attributes.

GeoJSON follows RFC 7946 (lon/lat on WGS 84).  The GeoPackage follows OGC 12-128r18 (version 1.3),
written with the standard library's sqlite3: the three required tables, the WGS 84 and the two
undefined spatial reference systems, a feature table whose geometry blobs are the GeoPackage header
(``GP``, version 0, little-endian, no envelope) followed by a little-endian WKB point.  Missing values
(NaN, None, pandas' NA) become JSON null and SQL NULL.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from seabed_hmc.atomic import atomic_path, write_text_atomic

WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",'
    '0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]]'
)
GPKG_APPLICATION_ID = 0x47504B47  # "GPKG"
GPKG_VERSION = 10300  # 1.3.0


def _plain(value):
    """A table cell as a JSON / SQL value: Python scalars, missing values as None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _records(table: pd.DataFrame) -> list[list]:
    return [[_plain(v) for v in row] for row in table.itertuples(index=False, name=None)]


def write_geojson(path: str | Path, geometries: Sequence[dict], table: pd.DataFrame) -> None:
    """A FeatureCollection: ``geometries[i]`` (GeoJSON geometry objects, lon/lat) with row ``i`` of
    ``table`` as its properties."""
    if len(geometries) != len(table):
        raise ValueError(f"{len(geometries)} geometries but {len(table)} table rows")
    columns = [str(c) for c in table.columns]
    features = [
        {"type": "Feature", "geometry": geometry, "properties": dict(zip(columns, record, strict=True))}
        for geometry, record in zip(geometries, _records(table), strict=True)
    ]
    write_text_atomic(Path(path), json.dumps({"type": "FeatureCollection", "features": features}))


def point_geometries(lon: Sequence[float], lat: Sequence[float]) -> list[dict]:
    return [{"type": "Point", "coordinates": [float(x), float(y)]} for x, y in zip(lon, lat, strict=True)]


def gpkg_point(x: float, y: float, srs_id: int) -> bytes:
    """A GeoPackage geometry blob for one point (header without envelope, then WKB)."""
    return b"GP" + struct.pack("<BBi", 0, 0b00000001, srs_id) + struct.pack("<BIdd", 1, 1, x, y)


def _sql_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
        return "INTEGER"
    if pd.api.types.is_float_dtype(series):
        return "REAL"
    return "TEXT"


def write_gpkg_points(
    path: str | Path, lon: Sequence[float], lat: Sequence[float], table: pd.DataFrame, layer: str = "points"
) -> None:
    """A GeoPackage with one point layer on WGS 84 (EPSG:4326): point ``i`` at (lon, lat) with row ``i``
    of ``table`` as its attributes."""
    if not (len(lon) == len(lat) == len(table)):
        raise ValueError(f"{len(lon)} longitudes, {len(lat)} latitudes and {len(table)} table rows")
    reserved = {"fid", "geom"}
    clash = [c for c in table.columns if str(c).lower() in reserved]
    if clash:
        raise ValueError(f"columns {clash} clash with the GeoPackage's own fid and geom columns")
    path = Path(path)
    with atomic_path(path, suffix=".gpkg") as temporary:
        db = sqlite3.connect(temporary)
        try:
            _write_gpkg(db, lon, lat, table, layer)
            db.commit()
        finally:
            db.close()


def _write_gpkg(db: sqlite3.Connection, lon, lat, table: pd.DataFrame, layer: str) -> None:
    db.execute(f"PRAGMA application_id = {GPKG_APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {GPKG_VERSION}")
    db.execute(
        "CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, "
        "organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, "
        "description TEXT)"
    )
    db.executemany(
        "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                "Undefined cartesian SRS",
                -1,
                "NONE",
                -1,
                "undefined",
                "undefined cartesian coordinate reference system",
            ),
            (
                "Undefined geographic SRS",
                0,
                "NONE",
                0,
                "undefined",
                "undefined geographic coordinate reference system",
            ),
            (
                "WGS 84 geodetic",
                4326,
                "EPSG",
                4326,
                WGS84_WKT,
                "longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid",
            ),
        ],  # fmt: skip
    )
    db.execute(
        "CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, "
        "identifier TEXT UNIQUE, description TEXT DEFAULT '', last_change DATETIME NOT NULL, min_x DOUBLE, "
        "min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER REFERENCES gpkg_spatial_ref_sys(srs_id))"
    )
    db.execute(
        "CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL, "
        "geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL, "
        "CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name))"
    )
    columns = [str(c) for c in table.columns]
    fields = "".join(f', "{c}" {_sql_type(table[c])}' for c in columns)
    db.execute(f'CREATE TABLE "{layer}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom POINT{fields})')
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    bounds = (min(lon), min(lat), max(lon), max(lat)) if len(lon) else (None,) * 4
    db.execute(
        "INSERT INTO gpkg_contents VALUES (?, 'features', ?, '', ?, ?, ?, ?, ?, 4326)",
        (layer, layer, now, *bounds),
    )
    db.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POINT', 4326, 0, 0)", (layer,))
    marks = ", ".join("?" * (len(columns) + 1))
    names = "".join(f', "{c}"' for c in columns)
    db.executemany(
        f'INSERT INTO "{layer}" (geom{names}) VALUES ({marks})',
        [
            (gpkg_point(float(x), float(y), 4326), *record)
            for x, y, record in zip(lon, lat, _records(table), strict=True)
        ],
    )
