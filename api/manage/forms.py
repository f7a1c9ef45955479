"""The pages' forms (Flask-WTF): each carries the session's CSRF token; errors are shown by their field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange
from wtforms.widgets import HiddenInput

from domain.reminders.selections import MAX_NOTE_LENGTH


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired("Enter your email."), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=1024)])
    next = HiddenField()


class VersionForm(FlaskForm):
    """Every edit names the version of the selection its author saw (optimistic check)."""

    version = IntegerField(
        widget=HiddenInput(),
        validators=[InputRequired("The page is out of date: reload it."), NumberRange(min=1)],
    )


class ReplaceForm(VersionForm):
    sku = StringField("SKU", validators=[DataRequired("Choose a product or enter its SKU."), Length(max=64)])


class AddForm(VersionForm):
    sku = StringField(
        "SKU", validators=[DataRequired("Enter the SKU of the product to add."), Length(max=64)]
    )
    tier = SelectField("Tier", coerce=int, choices=[SelectChoice(n, str(n)) for n in (1, 2, 3)])


class NoteForm(VersionForm):
    note = TextAreaField(
        "Personal note in the email",
        validators=[Length(max=MAX_NOTE_LENGTH, message=f"At most {MAX_NOTE_LENGTH} characters.")],
    )


class SkipForm(VersionForm):
    reason = StringField(
        "Reason",
        validators=[
            DataRequired("Say why no email goes out."),
            Length(max=200, message="At most 200 characters."),
        ],
    )


class StopRecipientForm(FlaskForm):
    reason = StringField("Reason", validators=[Length(max=200, message="At most 200 characters.")])
