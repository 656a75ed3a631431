"""The guide's `AppServer.kt` (docs/mobile-integration.md) compiled with Debian's Kotlin compiler
against OkHttp 3 (the version the Android OSS SDK brings) and Android's org.json, then run
against the live server: login, credentials parsing, a ticket, eight parallel 401s that must
spend the refresh token once, and the errors an app has to tell apart. What needs the Android
or OSS SDK cannot be compiled here; scripts/mobile_client/ proves that part of the sequence.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from rest_framework_simplejwt.tokens import AccessToken

from accounts.services import user_suspend
from tests.factories import PASSWORD, UserFactory

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "mobile-integration.md"
JARS = [
    Path("/usr/share/java/okhttp.jar"),
    Path("/usr/share/java/okio.jar"),
    Path("/usr/share/java/com.android.json.jar"),
]
STDLIB = Path("/usr/share/java/kotlin-stdlib.jar")
INSTALL_HINT = "apt-get update && apt-get install -y kotlin libokhttp-java libandroid-json-java"
# Short JVM runs: the client compiler alone and the serial collector halve kotlinc's CPU time
# (the optimising compiler's threads would compete with the test workers for the cores) and
# produce the same classes.
JVM_OPTIONS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]

HARNESS = """
import okhttp3.OkHttpClient
import okhttp3.Request
import org.json.JSONArray
import org.json.JSONObject
import java.io.IOException
import java.util.Collections
import java.util.concurrent.CyclicBarrier
import kotlin.concurrent.thread

fun report(step: String, data: JSONObject) = println(data.put("step", step).toString())

fun main(args: Array<String>) {
    val baseUrl = args[0]
    val http = OkHttpClient()

    val session = Session.login(http, baseUrl, args[1], args[2])
    val creds = CredentialsSource(session).fetch()
    report("credentials", JSONObject()
        .put("accessKeyId", creds.accessKeyId)
        .put("prefix", creds.prefix)
        .put("bucket", creds.bucket)
        .put("region", creds.region)
        .put("endpoint", creds.endpoint)
        .put("expiration", creds.expiration)
        .put("serverTimeMillis", creds.serverTimeMillis))

    val ticket = takeTicket(session, "IMG_0001.HEIC", 1234, "image/heic")
    report("ticket", JSONObject()
        .put("id", ticket.id)
        .put("key", ticket.key)
        .put("contentType", ticket.contentType)
        .put("headers", JSONObject(ticket.headers))
        .put("plainHeaders", JSONObject(ticket.plainHeaders))
        .put("callbackUrl", ticket.callbackParam["callbackUrl"])
        .put("callbackVars", JSONArray(ticket.callbackVars.keys.sorted())))

    val stale = Session(http, baseUrl, args[4], args[5])
    val barrier = CyclicBarrier(8)
    val statuses = Collections.synchronizedList(ArrayList<Int>())
    val threads = (1..8).map {
        thread {
            barrier.await()
            val request = Request.Builder().url("$baseUrl/api/uploads/").get()
            stale.execute(request).use { statuses.add(it.code()) }
        }
    }
    threads.forEach { it.join() }
    report("refresh", JSONObject()
        .put("statuses", JSONArray(statuses))
        .put("refreshes", stale.refreshes))

    // A user suspended after logging in: the next credentials call says so.
    val source = CredentialsSource(Session(http, baseUrl, args[3], args[6]))
    try {
        source.fetch()
        report("suspended", JSONObject().put("code", "none"))
    } catch (e: IOException) {
        // How the Android SDK hands it back: wrapped in ClientExceptions.
        val api = RuntimeException("sdk", IOException("client", e)).apiException()
        report("suspended", JSONObject()
            .put("status", api?.status)
            .put("code", api?.code)
            .put("lastError", source.lastError?.code))
    }

    // args[5] was spent by the refresh above: this session has to log in again.
    try {
        CredentialsSource(Session(http, baseUrl, args[4], args[5])).fetch()
        report("expired", JSONObject().put("code", "none"))
    } catch (e: SessionExpiredException) {
        report("expired", JSONObject().put("status", e.status).put("code", e.code))
    }
}
"""


def _guide_kotlin() -> str:
    blocks = re.findall(r"```kotlin\n(.*?)```", GUIDE.read_text(), flags=re.S)
    (app_server,) = [block for block in blocks if block.startswith("// AppServer.kt")]
    return app_server


def _toolchain() -> tuple[str, str]:
    kotlinc, java = shutil.which("kotlinc"), shutil.which("java")
    missing = [str(jar) for jar in [*JARS, STDLIB] if not jar.is_file()]
    if not kotlinc or not java or missing:
        pytest.fail(
            "The Kotlin snippets of docs/mobile-integration.md are compiled with Debian's Kotlin "
            f"compiler, OkHttp 3 and org.json (missing: {missing or 'kotlinc/java'}); install "
            f"them with:  {INSTALL_HINT}",
            pytrace=False,
        )
    return kotlinc, java


@pytest.fixture
def live_callbacks(alibaba, live_server, settings) -> str:
    settings.OSS_CALLBACK_URL = live_server.url + "/api/oss/callback/"
    return live_server.url


@pytest.mark.slow(20)
@pytest.mark.django_db(transaction=True)
def test_the_guides_app_server_kotlin_compiles_and_talks_to_the_server(
    live_callbacks, settings, tmp_path
):
    kotlinc, java = _toolchain()
    user, suspended = UserFactory(), UserFactory()
    pair, suspended_pair = (
        requests.post(
            f"{live_callbacks}/api/auth/login/",
            json={"username": who.username, "password": PASSWORD},
            timeout=15,
        ).json()
        for who in (user, suspended)
    )
    user_suspend(user=suspended, reason="test")
    expired = AccessToken.for_user(user)
    expired.set_exp(from_time=datetime.now(UTC) - timedelta(hours=1))
    (tmp_path / "AppServer.kt").write_text(_guide_kotlin())
    (tmp_path / "Main.kt").write_text(HARNESS)
    classpath = ":".join(str(jar) for jar in JARS)

    jvm = [f"-J{option}" for option in JVM_OPTIONS]
    compiled = subprocess.run(
        [kotlinc, *jvm, "-cp", classpath, "-d", str(tmp_path / "out"), "AppServer.kt", "Main.kt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert compiled.returncode == 0, compiled.stderr
    assert " error: " not in compiled.stderr
    run = subprocess.run(
        [
            java,
            *JVM_OPTIONS,
            "-cp",
            f"{tmp_path / 'out'}:{classpath}:{STDLIB}",
            "MainKt",
            live_callbacks,
            user.username,
            PASSWORD,
            suspended_pair["access"],
            str(expired),
            pair["refresh"],
            suspended_pair["refresh"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    steps = {line["step"]: line for line in map(json.loads, run.stdout.splitlines())}

    credentials = steps["credentials"]
    assert credentials["prefix"] == f"users/{user.public_id}/"
    assert credentials["accessKeyId"].startswith("STS.")
    assert credentials["bucket"] == settings.OSS_BUCKET
    assert credentials["endpoint"] == settings.OSS_PUBLIC_ENDPOINT
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", credentials["expiration"])
    assert abs(credentials["serverTimeMillis"] / 1000 - datetime.now(UTC).timestamp()) < 300

    ticket = steps["ticket"]
    assert ticket["key"].startswith(credentials["prefix"])
    assert ticket["contentType"] == "image/heic"
    assert {"x-oss-callback", "x-oss-callback-var"} <= ticket["headers"].keys()
    assert ticket["plainHeaders"] == {
        name: value
        for name, value in ticket["headers"].items()
        if not name.startswith("x-oss-callback")
    }
    assert ticket["callbackUrl"] == settings.OSS_CALLBACK_URL
    assert ticket["callbackVars"] == ["x:ticket"]

    assert steps["refresh"] == {"step": "refresh", "statuses": [200] * 8, "refreshes": 1}
    assert steps["suspended"] == {
        "step": "suspended",
        "status": 403,
        "code": "account_suspended",
        "lastError": "account_suspended",
    }
    assert steps["expired"] == {"step": "expired", "status": 401, "code": "token_not_valid"}
