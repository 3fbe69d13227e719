"""Run a job to the end inside one HTTP request (the OpenAI and A1111 endpoints are synchronous)."""

from __future__ import annotations

from zaoxiang.api.errors import RequestTimeout, status_for_job_error
from zaoxiang.errors import ZaoxiangError
from zaoxiang.protocol import GenerationRequest
from zaoxiang.service.core import Service
from zaoxiang.service.jobs import Job, JobStatus


class JobFailed(ZaoxiangError):
    """A synchronous job ended without images; carries the job's own code and a fitting status."""

    def __init__(self, job: Job) -> None:
        err = job.error
        code = err.code if err else "generation_failed"
        super().__init__(err.message if err else f"job {job.id} {job.status.value}", field=err.field if err else None, code=code)
        self.http_status = status_for_job_error(code)


async def run_to_end(svc: Service, request: GenerationRequest, owner: str, timeout: float) -> Job:
    job, _ = svc.submit(request, owner)
    job = await svc.wait(job.id, timeout)
    if not job.status.terminal:
        # Nobody will read this result: free the device for the next caller.
        svc.cancel(job.id, owner)
        raise RequestTimeout(f"job {job.id} did not finish within {timeout:g}s and was cancelled")
    if job.status is not JobStatus.succeeded:
        raise JobFailed(job)
    return job
