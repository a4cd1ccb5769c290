"""The service's logins are derived from the owner's URL: same server, database and options, another user."""

from voice_service.db import APP_ROLE, WORKER_ROLE
from voice_service.dbroles import login_dsn, login_name


def test_login_dsn_keeps_the_server_and_database() -> None:
    # The embedded server: a Unix socket directory in the query string, no password.
    assert login_dsn("postgresql://postgres:@/voice?host=/tmp/pg", "voice_app_login", "pw") == (
        "postgresql://voice_app_login:pw@/voice?host=%2Ftmp%2Fpg"
    )
    assert login_dsn("postgresql://owner:s3cret@db.internal:5432/voice?sslmode=require&user=owner&password=x",
                     "voice_app_login", "a/b@c") == (
        "postgresql://voice_app_login:a%2Fb%40c@db.internal:5432/voice?sslmode=require"
    )


def test_login_names_are_per_database_and_fit_an_identifier() -> None:
    assert login_name("voice", APP_ROLE) == "voice_app_login"
    assert login_name("voice", WORKER_ROLE) == "voice_worker_login"
    long = login_name("d" * 80, WORKER_ROLE)
    assert len(long.encode()) <= 63 and long.endswith("_worker_login")
