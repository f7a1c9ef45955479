"""The pages' forms (Flask-WTF): each carries the session's CSRF token; errors are shown by their field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import HiddenInput

from domain.access.users import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from domain.models import CONTACT_KINDS, DATE_KINDS
from domain.models.people import RECURRENCES
from domain.reminders.selections import MAX_NOTE_LENGTH
from domain.review.contacts import MAX_CONTACT_NOTE


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


class MoveForm(VersionForm):
    """Up or down within the tier: a form per button (progressive enhancement, no script)."""

    step = IntegerField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(min=-1, max=1)])


class ContactForm(FlaskForm):
    kind = SelectField("How", choices=[SelectChoice(k, k) for k in CONTACT_KINDS])
    note = TextAreaField(
        "Note (optional)",
        validators=[Length(max=MAX_CONTACT_NOTE, message=f"At most {MAX_CONTACT_NOTE} characters.")],
    )


class RecipientForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Enter the recipient's name."), Length(max=200)])
    relationship = StringField(
        "Relationship",
        validators=[DataRequired("Say who they are to the client."), Length(max=50)],
        description="wife, colleague, partner company...",
    )
    interests = StringField("Interests, separated by commas", validators=[Length(max=1000)])


MONTHS = [SelectChoice(0, "choose")] + [
    SelectChoice(i, name)
    for i, name in enumerate(
        "January February March April May June July August September October November December".split(),
        start=1,
    )
]


class DateForm(FlaskForm):
    kind = SelectField("Occasion", choices=[SelectChoice(k, k.replace("_", " ")) for k in DATE_KINDS])
    title = StringField("Name of a custom occasion", validators=[Length(max=200)])
    day = IntegerField("Day", validators=[InputRequired("Enter the day."), NumberRange(1, 31, "1 to 31.")])
    month = SelectField("Month", coerce=int, choices=MONTHS)
    year = IntegerField("Year (a one-off date's, or the first)", validators=[Optional()])
    recurrence = SelectField("Repeats", choices=[SelectChoice(r, r) for r in RECURRENCES])


def _password(label: str) -> PasswordField:
    return PasswordField(
        label,
        validators=[
            DataRequired("Enter a password."),
            Length(MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH, f"At least {MIN_PASSWORD_LENGTH} characters."),
        ],
    )


class NewUserForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired("Enter an email."), Length(max=254)])
    name = StringField("Name", validators=[DataRequired("Enter a name."), Length(max=200)])
    role = SelectField("Role", choices=[SelectChoice("manager", "manager"), SelectChoice("admin", "admin")])
    password = _password("Initial password")


class PasswordForm(FlaskForm):
    password = _password("New password")


class ActiveForm(FlaskForm):
    active = IntegerField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(0, 1)])


class AssignForm(FlaskForm):
    """Clients (one or a few) to one manager; the choices are filled in by the view."""

    customer_ids = SelectMultipleField("Clients", coerce=int, validate_choice=False)
    manager_id = SelectField("Manager", coerce=int, validate_choice=False)


class UnassignForm(FlaskForm):
    customer_ids = SelectMultipleField("Clients", coerce=int, validate_choice=False)
