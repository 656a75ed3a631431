"""`manage.py report <name>`: the reports of reports/selectors.py as a table, CSV or JSON.

Read from the reports replica when REPORTS_DATABASE_URL is set (reports/routing.py); -v 2 says
how far behind it is.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appserver.errors import InvalidInput, ServiceUnavailable
from reports.formatting import render_csv, render_json, render_table
from reports.routing import reports_reading
from reports.selectors import REPORTS
from reports.serializers import report_filters_parse


class Command(BaseCommand):
    help = "Print a report: " + ", ".join(REPORTS)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", choices=sorted(REPORTS))
        parser.add_argument("--from", dest="from", help="First day (YYYY-MM-DD, UTC), inclusive.")
        parser.add_argument("--to", dest="to", help="Last day (YYYY-MM-DD, UTC), inclusive.")
        parser.add_argument("--user", help="Username or public id.")
        parser.add_argument("--content-type", dest="content_type", help='e.g. "image/*"')
        parser.add_argument("--limit", help="Rows for usage / top-uploaders.")
        parser.add_argument("--format", choices=("table", "csv", "json"), default="table")

    def handle(self, *args, **options) -> None:
        spec = REPORTS[options["name"]]
        data = {k: options.get(k) for k in ("from", "to", "user", "content_type", "limit")}
        try:
            filters = report_filters_parse(spec=spec, data=data)
        except InvalidInput as exc:
            problems = "; ".join(
                f"--{k.replace('_', '-')}: {' '.join(str(m) for m in v)}"
                for k, v in (exc.fields or {}).items()
            )
            raise CommandError(f"{exc.message} {problems}".strip()) from exc
        try:
            with reports_reading() as source:
                rows = spec.run(filters=filters)
        except ServiceUnavailable as exc:
            raise CommandError(exc.message) from exc
        if source.replica and options["verbosity"] >= 2:
            self.stderr.write(source.description)
        fmt = options["format"]
        if fmt == "json":
            self.stdout.write(render_json(name=spec.name, columns=spec.columns, rows=rows))
        elif fmt == "csv":
            self.stdout.write(render_csv(columns=spec.columns, rows=rows), ending="")
        else:
            self.stdout.write(render_table(columns=spec.columns, rows=rows), ending="")
