from control.common.migrate import run_env
from control.compute.models import Base

run_env(Base.metadata)
