"""Open-data dataset descriptions."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.common import Text


class ColumnPublic(BaseModel):
    name: str
    type: str
    title: Text


class DatasetPublic(BaseModel):
    id: str
    title: Text
    description: Text
    license: str
    publisher: str
    theme: str
    update_frequency: str
    daily: bool = Field(description="True: rows per day; choose days with start and end.")
    columns: list[ColumnPublic]
    formats: dict[str, str] = Field(description="Download URL by format.")
