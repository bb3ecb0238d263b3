"""Blocks against a real Prefect API (test harness), PostgreSQL and moto's S3 server."""

import boto3
import pytest
from prefect.filesystems import LocalFileSystem
from prefect_aws import S3Bucket
from prefect_sqlalchemy import SqlAlchemyConnector
from sqlalchemy import text

from blocks.bootstrap import bootstrap_blocks
from blocks.modbus import ModbusDevice
from blocks.resolve import load_block, load_storage
from shopfloor.errors import ShopfloorError
from shopfloor.modbus.tags import TagSpec
from tasks import runtime

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_bootstrap_on_defaults_makes_sqlite_and_local_folders(tmp_path):
    results = bootstrap_blocks({}, tmp_path)
    kinds = {r.name: r.block_type for r in results}
    assert kinds == {
        "shopfloor-source-db": "SqlAlchemyConnector",
        "shopfloor-warehouse-db": "SqlAlchemyConnector",
        "shopfloor-metadata-db": "SqlAlchemyConnector",
        "shopfloor-historian-db": "SqlAlchemyConnector",
        "shopfloor-aws": "AwsCredentials",
        "shopfloor-raw-logs": "LocalFileSystem",
        "shopfloor-lake": "LocalFileSystem",
    }
    assert isinstance(load_block("shopfloor-lake"), LocalFileSystem)
    lake = load_storage("shopfloor-lake")
    assert lake.kind == "local" and lake.root == str(tmp_path / "lake")
    with runtime.engine("shopfloor-warehouse-db").connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_bootstrap_from_env_is_idempotent_and_never_shows_a_secret(tmp_path, pg_url,
                                                                     s3_endpoint, s3_bucket):
    pw_url = pg_url.replace("postgres@", "postgres:hunter2-secret@")
    env = {
        "SHOPFLOOR_DB_URL": pg_url,
        "SHOPFLOOR_SOURCE_DB_URL": pw_url,
        "SHOPFLOOR_S3_BUCKET": s3_bucket,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
        "SHOPFLOOR_S3_ENDPOINT_URL": s3_endpoint,
    }
    first = bootstrap_blocks(env, tmp_path)
    second = bootstrap_blocks(env, tmp_path)
    assert first == second
    shown = "\n".join(f"{r.name} {r.block_type} {r.summary}" for r in first)
    assert "hunter2-secret" not in shown and "aws-secret-value" not in shown
    source = SqlAlchemyConnector.load("shopfloor-source-db")
    assert source.connection_info.password.get_secret_value() == "hunter2-secret"
    assert isinstance(S3Bucket.load("shopfloor-raw-logs"), S3Bucket)

    raw = load_storage("shopfloor-raw-logs")
    assert (raw.kind, raw.root, raw.prefix) == ("s3", s3_bucket, "raw")
    assert raw.credentials.endpoint_url == s3_endpoint
    raw.write_bytes("BRCB/2026112100/a.json", b'{"heartbeat": 1}\n')
    assert [o.key for o in raw.list_objects()] == ["BRCB/2026112100/a.json"]
    objects = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=s3_bucket)
    assert [o["Key"] for o in objects["Contents"]] == ["raw/BRCB/2026112100/a.json"]
    assert load_storage("shopfloor-lake").prefix == "lake"


def test_s3_listing_pages_past_one_thousand_keys(s3_endpoint, s3_bucket):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for i in range(1105):
        client.put_object(Bucket=s3_bucket, Key=f"p/{i:05d}.json", Body=b"{}")
    from shopfloor.storage import S3Credentials, StorageLocation

    loc = StorageLocation("s3", s3_bucket, "", S3Credentials("testing", "testing", None,
                                                              "us-east-1", s3_endpoint))
    keys = [o.key for o in loc.list_objects("p")]
    assert len(keys) == 1105 and keys[0] == "p/00000.json" and keys[-1] == "p/01104.json"


def test_unknown_block_is_a_clear_error():
    with pytest.raises(ShopfloorError, match="block 'no-such-block' not found"):
        runtime.engine("no-such-block")
    with pytest.raises(ShopfloorError, match="not found"):
        load_storage("no-such-storage")


def test_modbus_device_block_round_trips_its_register_map():
    tag = TagSpec(name="t1", column="temperature", address=10, data_type="float32",
                  byte_order="CDAB", scale=0.1)
    ModbusDevice(host="127.0.0.1", port=5020, loc_id="L1", register_map=[tag]).save(
        "line1-plc", overwrite=True)
    loaded = load_block("line1-plc", ModbusDevice)
    assert loaded.register_map == [tag] and loaded.loc_id == "L1"


def test_a_saved_connector_gives_one_engine_with_its_connect_args(tmp_path):
    url = f"sqlite+pysqlite:///{tmp_path / 'args.db'}"
    SqlAlchemyConnector(connection_info=url, connect_args={"isolation_level": "IMMEDIATE"}
                        ).save("args-db", overwrite=True)
    engine = runtime.engine("args-db")
    assert runtime.engine("args-db") is engine  # loaded twice, one engine
    with engine.connect() as conn:
        assert conn.connection.driver_connection.isolation_level == "IMMEDIATE"
    # Saved again with other arguments (as refresh-credentials saves a block): a new engine.
    SqlAlchemyConnector(connection_info=url).save("args-db", overwrite=True)
    assert runtime.engine("args-db") is not engine


FILLERS = 201  # one more than the API returns in one call (PREFECT_API_DEFAULT_LIMIT)


@pytest.fixture(scope="module")
def many_devices(prefect_harness: None) -> list[str]:
    """More ModbusDevice blocks than one API call returns, all sorting before the
    blocks the tests below look for (the API sorts block documents by name)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentCreate

    names = [f"a-many-{i:03d}" for i in range(FILLERS)]
    tag = TagSpec(name="t1", column="temperature", address=10, data_type="int16")
    ModbusDevice(host="127.0.0.1", port=5020, loc_id="L1", district="MANY",
                 register_map=[tag]).save(names[0], overwrite=True)
    # The others as plain copies of the first document: Block.save registers the type and
    # schema every time (half a second a block here).
    with get_client(sync_client=True) as client:
        first = client.read_block_document_by_name(names[0], ModbusDevice.get_block_type_slug())
        for name in names[1:]:
            client.create_block_document(BlockDocumentCreate(
                name=name, data=first.data, block_schema_id=first.block_schema_id,
                block_type_id=first.block_type_id))
    return names


def test_a_block_named_after_two_hundred_others_is_found(many_devices, tmp_path):
    LocalFileSystem(basepath=str(tmp_path)).save("zz-after-many", overwrite=True)
    assert load_storage("zz-after-many").kind == "local"


def test_a_district_of_more_than_two_hundred_devices_is_resolved_whole(many_devices):
    from tasks.reprocess import resolve_devices

    found = resolve_devices.fn(None, "MANY")
    assert [c.name for c in found] == many_devices


def test_bootstrap_replaces_a_block_of_another_type_after_two_hundred_others(
        many_devices, tmp_path):
    from prefect.client.orchestration import get_client

    from blocks.bootstrap import _save

    LocalFileSystem(basepath=str(tmp_path)).save("zz-switched", overwrite=True)
    _save(S3Bucket(bucket_name="sf-switched"), "zz-switched")
    with get_client(sync_client=True) as client:
        slugs = [d.block_type.slug for d in client.read_block_documents_by_type("local-file-system")
                 if d.name == "zz-switched"]
    assert slugs == []
    assert load_storage("zz-switched").root == "sf-switched"


def test_deploy_sees_gateways_and_notification_blocks_after_two_hundred_others(many_devices):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    from deployments.operations import AppliedOperations, _gateway_limits, _notify_ids
    from shopfloor.modbus.gateway import gateway_limit_name

    tag = TagSpec(name="t1", column="temperature", address=10, data_type="int16")
    for name, unit in (("zz-gw-a", 1), ("zz-gw-b", 2)):  # two unit ids behind one gateway
        ModbusDevice(host="127.0.0.1", port=15502, unit_id=unit, loc_id="L1",
                     register_map=[tag]).save(name, overwrite=True)
    CustomWebhookNotificationBlock(name="zz", url="http://127.0.0.1:9/hook").save(
        "zz-notify", overwrite=True)
    applied = AppliedOperations()
    with get_client(sync_client=True) as client:
        assert gateway_limit_name("127.0.0.1", 15502) in _gateway_limits(client)
        assert len(_notify_ids(client, ["zz-notify"], applied)) == 1
    assert applied.notify == ["zz-notify"]


def test_a_block_type_never_saved_has_no_documents():
    from blocks.documents import documents_of_type

    assert documents_of_type("shopfloor-never-saved") == []
