from control.common.migrate import run_env
from control.volume.models import Base

run_env(Base.metadata)
