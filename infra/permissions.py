"""What each function does with the stack's resources: the only grants it gets but its secrets' (least privilege).

Each concern's construct applies the part about its own resources (the buckets, the queues, the table). The
secrets are not here: a function may read those its settings model reads (infra/constructs/secrets.py). Event
sources add what Lambda itself needs to read them (SQS receive/delete, the table's stream)."""

from __future__ import annotations

from dataclasses import dataclass

from infra.topology import Topology
from ips.completion.service import output_csv_key
from ips.intake.service import incoming_key, input_csv_key, pinned_input_key
from ips.shared.options import OutputFormat

# DynamoDB authorises TransactWriteItems per contained action (Put, Update), there is no action of its own.
GET, PUT, UPDATE = "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"
# processed images: {requestId}/{row}/{index}-{tag}.{jpg,webp,avif}, by the request's output format; the only
# objects of the processed bucket
IMAGES = tuple(f"*.{output.extension}" for output in OutputFormat)


@dataclass(frozen=True)
class FunctionAccess:
    reads_uploads: tuple[str, ...] = ()  # object key patterns (s3:GetObject, which also allows HeadObject)
    writes_uploads: tuple[str, ...] = ()  # s3:PutObject, also what a presigned POST is signed with
    writes_processed: tuple[str, ...] = ()
    reads_processed: tuple[str, ...] = ()  # s3:GetObject: the source of a server-side copy (image reuse)
    sends_to_images_queue: bool = False  # sqs:SendMessage (SendMessageBatch is authorised by it)
    sends_to_chunks_queue: bool = False  # sqs:SendMessage on the chunks queue (the fan-out)
    sends_to_webhooks_queue: bool = False  # sqs:SendMessage on the webhook queue (a delivery's wake-ups)
    table_actions: tuple[str, ...] = ()
    lists_uploads: bool = False  # s3:ListBucket: HeadObject of a missing key answers 404, not 403
    lists_processed: bool = False  # the same on the processed bucket: a copy from a missing source is a 404
    # s3:AbortMultipartUpload (PutObject does not allow it): a failed multipart write leaves no parts to pay for
    aborts_uploads: tuple[str, ...] = ()
    # sqs:ReceiveMessage and DeleteMessage on the dead-letter queues (all of them) and the ingest failures queue
    drains_dead_letters: bool = False
    reads_queue_depths: bool = False  # sqs:GetQueueAttributes on the images and chunks queues: approximate counts


def function_access(topology: Topology) -> dict[str, FunctionAccess]:
    """Per function of the topology; a function without an entry is an error (grants are never guessed)."""
    direct = input_csv_key("*")  # {requestId}/input.csv: the direct upload's CSV
    output = output_csv_key("*")  # {requestId}/output.csv: private, read through presigned GETs signed here
    presigned = incoming_key("*")  # incoming/{requestId}.csv: where clients POST the presigned upload
    pinned = pinned_input_key("*", "*")  # {requestId}/input-{etag}.csv: the ingested version, copied out of reach
    access = {
        # validate, store the CSV (or sign the POST that stores it), open the counter, fan out onto the chunks
        # queue (or hand a failed fan-out to notify: the counter's OPEN -> FAILED flip)
        # (and reserve the request's images against the key's quotas: Update the tenant's counters, Put the marker;
        # a refused store releases them: Get the marker, Update)
        "upload": FunctionAccess(
            writes_uploads=(direct, presigned), sends_to_chunks_queue=True, table_actions=(GET, PUT, UPDATE)
        ),
        # the counter (consistent read) beside the catalog's record
        # (and the output CSV's presigned GET: signed with this role, so it needs the read)
        "status": FunctionAccess(reads_uploads=(output,), table_actions=(GET,)),
        # store images, count each once (Put marker + Update counter)
        "process": FunctionAccess(
            writes_processed=IMAGES,
            reads_processed=IMAGES,  # a reused image is copied from an earlier request's output
            lists_processed=True,  # ... whose expiry must answer 404 (ips.processing.reuse falls back to a fresh fetch)
            table_actions=(GET, PUT, UPDATE),
        ),
        # read a chunk's rows (a byte range of the direct CSV or of the pinned copy), add its products, send its
        # image tasks, record its progress (Get, Update), re-queue the rest when out of time (a chunk failing
        # every delivery is the reconciler's, from the DLQ)
        "expand": FunctionAccess(
            reads_uploads=(direct, pinned),
            sends_to_images_queue=True,
            sends_to_chunks_queue=True,
            table_actions=(GET, UPDATE),
        ),
        # the tenant's webhook secret, derived from the master; its generation is in the catalog (MongoDB): only
        # secrets, which follow from its settings model (infra/constructs/secrets.py)
        "secret": FunctionAccess(),
        # the output CSV and the final status; the request's images leave flight (Get the reservation marker,
        # Update it and the tenant's counter); its webhook's first wake-up on the webhook queue (no secret: it
        # signs nothing)
        "notify": FunctionAccess(
            reads_uploads=(output,),
            writes_uploads=(output,),
            aborts_uploads=(output,),  # a big output CSV is a multipart upload (ips_adapters.aws.put_stream)
            table_actions=(GET, UPDATE),
            sends_to_webhooks_queue=True,
        ),
        # one attempt of a webhook: signed with the tenant's secret (derived from the master), the output CSV's
        # presigned GET in it (signed with this role, so it needs the read), the next wake-up on its own queue
        "webhook": FunctionAccess(reads_uploads=(output,), sends_to_webhooks_queue=True),
        # the presigned path: pin the uploaded CSV (CopyObject: read the source, write the copy), read and plan
        # the copy, reserve its images (ips.shared.quotas), open the counter, fan out; a refused upload is handed to
        # notify (the counter's OPEN -> FAILED flip), which sends its webhook
        "ingest": FunctionAccess(
            reads_uploads=(presigned, pinned),
            writes_uploads=(pinned,),
            sends_to_chunks_queue=True,
            table_actions=(GET, PUT, UPDATE),
        ),
        # drain the DLQs (images, chunks, webhooks: put back on their queue, or fail images and count them, end
        # requests), re-plan a CSV (direct, or the pinned copy) to re-queue lost chunks (the chunks queue) and
        # pending images (the images queue), check whether an expired upload's file is there and ingest it (as
        # ingest does: pin the copy, plan it, reserve its images, open the counter, fan out) as it does each
        # upload of the ingest failures queue, finish a lost completion (the private output CSV, releasing images)
        # and wake lost webhook deliveries (the webhook queue; it signs nothing); the two queues' depths tell lost
        # work from work waiting in a backlog, and each chunk's progress (Get) which of it was sent; hold the
        # round's lease (Put, Update)
        "reconcile": FunctionAccess(
            reads_uploads=(direct, presigned, pinned, output),
            lists_uploads=True,
            writes_uploads=(pinned, output),
            aborts_uploads=(output,),
            sends_to_images_queue=True,
            sends_to_chunks_queue=True,
            sends_to_webhooks_queue=True,
            table_actions=(GET, PUT, UPDATE),
            drains_dead_letters=True,
            reads_queue_depths=True,
        ),
    }
    missing = [spec.name for spec in topology.functions if spec.name not in access]
    if missing:
        raise KeyError(f"no access declared for function(s) {missing}: add them to infra/permissions.py")
    return {spec.name: access[spec.name] for spec in topology.functions}
