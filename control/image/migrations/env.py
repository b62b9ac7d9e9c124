from control.common.migrate import run_env
from control.image.models import Base

run_env(Base.metadata)
