from control.common.migrate import run_env
from control.network.models import Base

run_env(Base.metadata)
