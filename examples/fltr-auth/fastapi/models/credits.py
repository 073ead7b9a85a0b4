"""The FastAPI service's models of fltr_auth (SQLModel): the credit balance endpoint reads user_credits.

As the seed's team had it before the runbook's step 5: UserCredits.user_id carries no foreign_key, so nothing in
the service says that a credit account belongs to a user. `tally db drift --sqlalchemy models.credits:SQLModel.metadata`
finds it once the database has the key (examples/fltr-auth/README.md).
"""
from datetime import datetime
from typing import Optional

from sqlalchemy import Column, DateTime, text
from sqlmodel import Field, SQLModel


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True)
    email: str = Field(unique=True)
    name: Optional[str] = None


class UserCredits(SQLModel, table=True):
    __tablename__ = "user_credits"

    id: Optional[int] = Field(default=None, primary_key=True)
    user_id: str
    team_id: Optional[str] = Field(default=None, foreign_key="teams.id")
    balance: int = 0
    updated_at: datetime = Field(
        sa_column=Column(DateTime(), nullable=False, server_default=text("now()")))
